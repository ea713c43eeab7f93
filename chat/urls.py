from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("threads", views.thread_list, name="threads"),
    path("settings", views.settings_page, name="settings"),
    path("c/new/send", views.send, name="send_new"),
    path("c/<int:conversation_id>/", views.conversation_page, name="conversation"),
    path("c/<int:conversation_id>/send", views.send, name="send"),
    path("c/<int:conversation_id>/stop", views.stop, name="stop"),
    path("c/<int:conversation_id>/retry", views.retry, name="retry"),
    path("c/<int:conversation_id>/regenerate", views.regenerate, name="regenerate"),
    path("c/<int:conversation_id>/edit", views.edit, name="edit"),
    path("c/<int:conversation_id>/rename", views.rename, name="rename"),
    path("c/<int:conversation_id>/title", views.title, name="title"),
    path("c/<int:conversation_id>/delete", views.delete, name="delete"),
    path("c/<int:conversation_id>/files/<str:file_id>", views.file, name="file"),
    path(
        "c/<int:conversation_id>/runs/<str:run_id>/calls/<str:call_id>",
        views.call,
        name="call",
    ),
]
