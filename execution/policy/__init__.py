"""Policy: who may run which plugin, how much and how often (grants, throttles, quotas)."""
