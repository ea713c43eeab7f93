from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chat import views as chat_views

urlpatterns = [
    # The same engine under both: OpenAI's `/v1` and Azure OpenAI's `/openai`.
    *(path(prefix, include("engine.api.urls")) for prefix in settings.ENGINE_URL_PREFIXES),
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="chat/login.html",
            redirect_authenticated_user=True,
            extra_context={"signup_enabled": settings.SIGNUP_ENABLED},
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", chat_views.signup, name="signup"),
    path("", include("chat.urls")),
]
