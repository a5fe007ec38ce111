"""The API's routers, one per area: images, models, assets, usage, health (and metrics)."""
