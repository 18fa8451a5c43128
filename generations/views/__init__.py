"""Browser pages, one module per page family (URLs in :mod:`generations.urls`)."""
