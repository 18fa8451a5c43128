from django.urls import path

from generations.views import batches, files, gallery, hooks, live, studio

app_name = "generations"
urlpatterns = [
    path("", studio.studio, name="studio"),
    path("generate", studio.generate, name="generate"),
    path("studio/options", studio.options, name="options"),
    path("studio/estimate", studio.estimate, name="estimate"),
    path("images/<uuid:pk>/file", files.image_file, name="image-file"),
    path("images/<uuid:pk>/thumbnail", files.image_thumbnail, name="image-thumbnail"),
    # Live status and failure cards
    path("live", live.live_status, name="live"),
    path("jobs/<uuid:pk>/retry", live.job_retry, name="job-retry"),
    path("jobs/<uuid:pk>/cancel", live.job_cancel, name="job-cancel"),
    # Batches
    path("batches", batches.batch_list, name="batches"),
    path("batches/check", batches.batch_check, name="batch-check"),
    path("batches/start", batches.batch_start, name="batch-start"),
    path("batches/<uuid:pk>", batches.batch_detail, name="batch"),
    path("batches/<uuid:pk>/cancel", batches.batch_cancel, name="batch-cancel"),
    path("batches/<uuid:pk>/retry", batches.batch_retry, name="batch-retry"),
    path("batches/<uuid:pk>/zip", batches.batch_zip, name="batch-zip"),
    # Gallery and image pages
    path("gallery", gallery.gallery_page, name="gallery"),
    path("gallery/delete", gallery.bulk_delete, name="bulk-delete"),
    path("gallery/restore", gallery.bulk_restore, name="bulk-restore"),
    path("gallery/download", gallery.bulk_download, name="bulk-download"),
    path("images/<uuid:pk>", gallery.image_page, name="image"),
    path("images/<uuid:pk>/star", gallery.image_star, name="image-star"),
    path("images/<uuid:pk>/share", gallery.image_share, name="image-share"),
    path("images/<uuid:pk>/delete", gallery.image_delete, name="image-delete"),
    path("images/<uuid:pk>/restore", gallery.image_restore, name="image-restore"),
    # Queue-style upstreams calling back
    path("hooks/<slug:kind>/<str:token>", hooks.webhook, name="webhook"),
]
