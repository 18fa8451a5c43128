# nanoweb image: web, worker, beat and the sandbox upstream all run from it
# (see docker-compose.yml for the commands).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 1000 --user-group nanoweb
# A font with Chinese glyphs, for the sandbox's pictures of Chinese prompts.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
# Installed in place: settings find templates/ and static/ next to the code in /app.
# var/ (static files, media, beat schedule) is the only place the app writes to.
RUN pip install -e . \
 && mkdir -p var/media \
 && chown -R nanoweb:nanoweb var

USER nanoweb
EXPOSE 8000

CMD ["sh", "-c", "python manage.py serve --prepare-only && exec gunicorn -c nanoweb/gunicorn_conf.py --bind 0.0.0.0:8000"]
