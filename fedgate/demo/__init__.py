"""Demo support: synthetic department data with planted anomalies."""
