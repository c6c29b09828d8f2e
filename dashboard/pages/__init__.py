"""One module per dashboard page; each has ``register(app, context)``, which calls
``dash.register_page`` and adds the page's callbacks to that app."""
