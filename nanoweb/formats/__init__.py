"""Date formats per language (``FORMAT_MODULE_PATH``), over Django's own.

Templates name a format (``|date:"DATE_FORMAT"``) instead of spelling one, so Chinese
reads 2026年12月2日 where English reads Dec 2, 2026. A name not set here comes from
Django's locale files.
"""
