"""The Assistants API v2 paths, verbatim from OpenAI's spec."""

from django.urls import path, re_path

from engine.api.dispatch import api_not_found, api_view
from engine.api.views import (
    assistants,
    code_interpreter,
    files,
    messages,
    models,
    runs,
    threads,
    vector_stores,
)

urlpatterns = [
    path(
        "assistants",
        api_view(GET=assistants.list_assistants, POST=assistants.create_assistant),
    ),
    path(
        "assistants/<str:assistant_id>",
        api_view(
            GET=assistants.retrieve_assistant,
            POST=assistants.modify_assistant,
            DELETE=assistants.delete_assistant,
        ),
    ),
    path("threads", api_view(POST=threads.create_thread)),
    path("threads/runs", api_view(POST=runs.create_thread_and_run)),
    path(
        "threads/<str:thread_id>",
        api_view(
            GET=threads.retrieve_thread,
            POST=threads.modify_thread,
            DELETE=threads.delete_thread,
        ),
    ),
    path(
        "threads/<str:thread_id>/messages",
        api_view(GET=messages.list_messages, POST=messages.create_message),
    ),
    path(
        "threads/<str:thread_id>/messages/<str:message_id>",
        api_view(
            GET=messages.retrieve_message,
            POST=messages.modify_message,
            DELETE=messages.delete_message,
        ),
    ),
    path(
        "threads/<str:thread_id>/runs",
        api_view(GET=runs.list_runs, POST=runs.create_run),
    ),
    path(
        "threads/<str:thread_id>/runs/<str:run_id>",
        api_view(GET=runs.retrieve_run, POST=runs.modify_run),
    ),
    path("threads/<str:thread_id>/runs/<str:run_id>/cancel", api_view(POST=runs.cancel_run)),
    path(
        "threads/<str:thread_id>/runs/<str:run_id>/submit_tool_outputs",
        api_view(POST=runs.submit_tool_outputs),
    ),
    path("threads/<str:thread_id>/runs/<str:run_id>/steps", api_view(GET=runs.list_steps)),
    path(
        "threads/<str:thread_id>/runs/<str:run_id>/steps/<str:step_id>",
        api_view(GET=runs.retrieve_step),
    ),
    path("files", api_view(GET=files.list_files, POST=files.create_file)),
    path(
        "files/<str:file_id>",
        api_view(GET=files.retrieve_file, DELETE=files.delete_file),
    ),
    path("files/<str:file_id>/content", api_view(GET=files.file_content)),
    path(
        "vector_stores",
        api_view(GET=vector_stores.list_vector_stores, POST=vector_stores.create_vector_store),
    ),
    path(
        "vector_stores/<str:vector_store_id>",
        api_view(
            GET=vector_stores.retrieve_vector_store,
            POST=vector_stores.modify_vector_store,
            DELETE=vector_stores.delete_vector_store,
        ),
    ),
    path(
        "vector_stores/<str:vector_store_id>/search",
        api_view(POST=vector_stores.search_vector_store),
    ),
    path(
        "vector_stores/<str:vector_store_id>/files",
        api_view(GET=vector_stores.list_store_files, POST=vector_stores.create_store_file),
    ),
    path(
        "vector_stores/<str:vector_store_id>/files/<str:file_id>",
        api_view(
            GET=vector_stores.retrieve_store_file,
            POST=vector_stores.update_store_file,
            DELETE=vector_stores.delete_store_file,
        ),
    ),
    path(
        "vector_stores/<str:vector_store_id>/files/<str:file_id>/content",
        api_view(GET=vector_stores.store_file_content),
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches",
        api_view(POST=vector_stores.create_file_batch),
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches/<str:batch_id>",
        api_view(GET=vector_stores.retrieve_file_batch),
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches/<str:batch_id>/cancel",
        api_view(POST=vector_stores.cancel_file_batch),
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches/<str:batch_id>/files",
        api_view(GET=vector_stores.list_batch_files),
    ),
    path("models", api_view(GET=models.list_models)),
    # An extra of this engine, not an OpenAI path: the chat's admin shows it.
    path(
        "threadline/code_interpreter",
        api_view(GET=code_interpreter.code_interpreter_status),
    ),
    re_path(r"^(?P<path>.*)$", api_not_found),
]
