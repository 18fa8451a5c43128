from django.urls import path

from generations import batch_views, gallery_views, views

app_name = "generations"
urlpatterns = [
    path("", views.studio, name="studio"),
    path("generate", views.generate, name="generate"),
    path("studio/options", views.options, name="options"),
    path("studio/estimate", views.estimate, name="estimate"),
    path("images/<uuid:pk>/file", views.image_file, name="image-file"),
    path("images/<uuid:pk>/thumbnail", views.image_thumbnail, name="image-thumbnail"),
    # Live status, failure cards and batches
    path("live", batch_views.live_status, name="live"),
    path("jobs/<uuid:pk>/retry", batch_views.job_retry, name="job-retry"),
    path("batches", batch_views.batch_list, name="batches"),
    path("batches/check", batch_views.batch_check, name="batch-check"),
    path("batches/start", batch_views.batch_start, name="batch-start"),
    path("batches/<uuid:pk>", batch_views.batch_detail, name="batch"),
    path("batches/<uuid:pk>/cancel", batch_views.batch_cancel, name="batch-cancel"),
    path("batches/<uuid:pk>/retry", batch_views.batch_retry, name="batch-retry"),
    path("batches/<uuid:pk>/zip", batch_views.batch_zip, name="batch-zip"),
    # Gallery and image pages
    path("gallery", gallery_views.gallery_page, name="gallery"),
    path("gallery/delete", gallery_views.bulk_delete, name="bulk-delete"),
    path("gallery/restore", gallery_views.bulk_restore, name="bulk-restore"),
    path("gallery/download", gallery_views.bulk_download, name="bulk-download"),
    path("images/<uuid:pk>", gallery_views.image_page, name="image"),
    path("images/<uuid:pk>/star", gallery_views.image_star, name="image-star"),
    path("images/<uuid:pk>/share", gallery_views.image_share, name="image-share"),
    path("images/<uuid:pk>/delete", gallery_views.image_delete, name="image-delete"),
    path("images/<uuid:pk>/restore", gallery_views.image_restore, name="image-restore"),
]
