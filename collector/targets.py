"""The table of what the collector wraps. One row per (resource, method); every row
applies to both the sync clients (``OpenAI``, ``AzureOpenAI``) and the async ones
(``AsyncOpenAI``, ``AsyncAzureOpenAI``): the wrapper picks its sync or async form
from the method itself.

Not listed on purpose:

* ``chat.completions.stream()`` and ``responses.stream()``: these helpers call the
  same resource's ``create(stream=True)``, which is wrapped; wrapping them too would
  count every call twice.
* ``with_raw_response`` / ``with_streaming_response``: they call the wrapped method
  (the collector drops their cached copies so they are rebuilt on top of it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TARGETS", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    #: Dotted path of the resource on the client, e.g. ``chat.completions``.
    resource: str
    #: Method name on that resource.
    method: str
    #: The ``endpoint`` value recorded on the event.
    endpoint: str
    #: Whether the method can return a stream (``stream=True``).
    streams: bool = False
    #: Whether, for a stream, usage must be asked for with
    #: ``stream_options={"include_usage": True}`` (Chat Completions only).
    stream_usage_opt_in: bool = False
    #: Event ``type`` values whose arrival counts as the first token.
    first_token_events: tuple[str, ...] = ()


TARGETS: tuple[Target, ...] = (
    Target("chat.completions", "create", "chat.completions", streams=True,
           stream_usage_opt_in=True),
    Target("chat.completions", "parse", "chat.completions"),
    Target("responses", "create", "responses", streams=True,
           first_token_events=("response.output_text.delta", "response.refusal.delta",
                               "response.function_call_arguments.delta",
                               "response.reasoning_summary_text.delta",
                               "response.audio.delta")),
    Target("responses", "parse", "responses"),
    Target("completions", "create", "completions", streams=True, stream_usage_opt_in=True),
    Target("embeddings", "create", "embeddings"),
    Target("moderations", "create", "moderations"),
    Target("images", "generate", "images.generate", streams=True,
           first_token_events=("image_generation.partial_image",
                               "image_generation.completed")),
    Target("images", "edit", "images.edit", streams=True,
           first_token_events=("image_edit.partial_image", "image_edit.completed")),
    Target("images", "create_variation", "images.variation"),
    Target("audio.transcriptions", "create", "audio.transcriptions", streams=True,
           first_token_events=("transcript.text.delta",)),
    Target("audio.translations", "create", "audio.translations"),
    Target("audio.speech", "create", "audio.speech"),
)
