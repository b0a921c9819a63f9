"""Shared domain types and rules: errors, identities, datasets, filters, audit entries, keys."""
