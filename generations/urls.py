from django.urls import path

from generations import views

app_name = "generations"
urlpatterns = [
    path("", views.studio, name="studio"),
    path("generate", views.generate, name="generate"),
    path("studio/options", views.options, name="options"),
    path("studio/estimate", views.estimate, name="estimate"),
    path("jobs/<uuid:pk>/card", views.job_card, name="job-card"),
    path("images/<uuid:pk>/file", views.image_file, name="image-file"),
    path("images/<uuid:pk>/thumbnail", views.image_thumbnail, name="image-thumbnail"),
]
