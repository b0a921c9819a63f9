"""One-dataset query kinds: each module holds a kind's typed query, plan, state machine and planning recipe.

A kind plans against `base.PlanningSteps` (implemented by the gateway's Planner)
and names the department call its plan needs (`base.AdapterCall`); the gateway's
engine runs every kind through one pump. Adding a kind is one module here, its
messages in `protos/fedgate/v1/query.proto` and its servicer method.
"""
