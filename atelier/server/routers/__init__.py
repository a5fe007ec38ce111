"""The API's routers, one per area: images, models, assets, health (and metrics)."""
