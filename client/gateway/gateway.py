"""The privacy gateway façade: validate -> (local model) -> sanitize -> route -> log -> send -> restore.

    gateway = Gateway.from_options(GatewayOptions(state_dir="~/.fedpriv/gateway", route="auto"))
    result = gateway.ask("Summarize the chart of John Smith, MRN 483920")
    result.route, result.answer, result.reason

Guarantees:

* an invalid prompt (empty, whitespace only, over the size limit) raises `PromptError` before
  anything else happens;
* the only text that can leave the device is the sanitizer's output, and only when the router
  says so; a sanitizer exception, too high a residual risk, or a detected identifier still
  present in the sanitized text gives ``route="refused"`` and nothing is sent;
* every request body is appended to the signed outgoing log before it is sent; if the log cannot
  be written nothing is sent;
* the answer shown to the user has placeholders restored to the originals, on the device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client.gateway.cloud import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, CloudClient
from client.gateway.keys import DeviceKey, ensure_state_dir
from client.gateway.local_model import DEFAULT_LOCAL_MAX_NEW_TOKENS, DEFAULT_LOCAL_MODEL, LocalAnswer, LocalModel, LocalModelError
from client.gateway.outgoing_log import LOG_NAME, OutgoingLog
from client.gateway.router import (
    DEFAULT_MAX_RESIDUAL_RISK,
    DEFAULT_MIN_CONFIDENCE,
    Policy,
    Route,
    RouteDecision,
    Router,
)
from client.gateway.types import PlaceholderSession, SanitizedPrompt, Sanitizer
from fedpriv.errors import FedprivError

DEFAULT_STATE_DIR = "~/.fedpriv/gateway"
DEFAULT_CLOUD_URL = "http://127.0.0.1:8765/v1"  # `fedpriv gateway serve`
DEFAULT_MAX_PROMPT_CHARS = 8000
DEFAULT_MAX_TOKENS = 256

CLOUD_SYSTEM_PROMPT = (
    "Some personal details in the user's message were replaced by placeholders in square brackets, "
    "such as [PERSON_1] or [DATE_1], and some values were generalized. When you refer to one of them, "
    "write the placeholder exactly as it appears. Do not guess what a placeholder stands for."
)


class PromptError(FedprivError, ValueError):
    """The prompt is not acceptable (empty, too long ...): nothing was sent."""


def validate_prompt(prompt: object, max_chars: int = DEFAULT_MAX_PROMPT_CHARS) -> str:
    if not isinstance(prompt, str):
        raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError("prompt is empty (or whitespace only): nothing sent")
    if len(prompt) > max_chars:
        raise PromptError(f"prompt is {len(prompt)} characters, over the limit of {max_chars}: nothing sent")
    if "\x00" in prompt:
        raise PromptError("prompt contains a NUL character: nothing sent")
    return prompt


# ---- the real sanitizer (implemented in sanitizer.py / session.py) ------------------------------


VAULT_DIR = "vault"
VAULT_KEY = "vault.key"


def default_sanitizer(
    state_dir: str | os.PathLike[str] | None,
) -> tuple[Sanitizer, Callable[[], PlaceholderSession]]:
    """The ONE place that wires in the real sanitizer: returns it and a factory of new sessions.

    Each session is one conversation (one `ask`, one batch line). With a state dir, its placeholder
    map is kept encrypted at rest in ``STATE_DIR/vault/<conversation>.vault`` (Fernet key in
    ``STATE_DIR/vault.key``, 0600), so that the placeholders of a logged request (its log entry
    carries the conversation id) can be mapped back on the device later.
    """
    try:
        from client.gateway.sanitizer import default_sanitizer as shared_sanitizer
        from client.gateway.session import ConversationSession, EncryptedVault
    except ImportError as err:
        raise FedprivError(f"the sanitizer is not available ({err}): nothing can be sent") from None
    sanitizer = shared_sanitizer()
    if state_dir is None:
        return sanitizer, ConversationSession
    vault_dir = ensure_state_dir(Path(state_dir).expanduser() / VAULT_DIR)
    key_file = Path(state_dir).expanduser() / VAULT_KEY

    def new_session() -> PlaceholderSession:
        session = ConversationSession()
        session.vault = EncryptedVault(vault_dir / f"{session.conversation_id}.vault", key_file=key_file)
        return session

    return sanitizer, new_session


# ---- results -------------------------------------------------------------------------------------


@dataclass
class AskResult:
    route: str  # "local" | "cloud" | "refused"
    answer: str | None  # restored answer (None when refused)
    reason: str
    sent: str | None = None  # the sanitized prompt, when it was sent
    confidence: float | None = None  # local model confidence, when it answered
    residual_risk: float | None = None
    entities: int | None = None  # identifiers replaced
    attempts: int | None = None  # cloud requests made
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.route in (Route.LOCAL.value, Route.CLOUD.value)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data.update(self.extra)
        return data


# ---- the façade ----------------------------------------------------------------------------------


@dataclass
class GatewayOptions:
    state_dir: str = DEFAULT_STATE_DIR
    route: str = Policy.AUTO.value
    cloud_url: str = DEFAULT_CLOUD_URL
    cloud_model: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    local_model: str = DEFAULT_LOCAL_MODEL
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    max_residual_risk: float = DEFAULT_MAX_RESIDUAL_RISK
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    max_tokens: int = DEFAULT_MAX_TOKENS
    local_max_new_tokens: int = DEFAULT_LOCAL_MAX_NEW_TOKENS


class Gateway:
    def __init__(
        self,
        *,
        sanitizer: Sanitizer | None,
        new_session: Callable[[], PlaceholderSession] | None,
        router: Router,
        cloud: CloudClient | None,
        local: LocalModel | None = None,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        system_prompt: str = CLOUD_SYSTEM_PROMPT,
    ) -> None:
        self.sanitizer = sanitizer
        self.new_session = new_session
        self.router = router
        self.cloud = cloud
        self.local = local
        self.max_prompt_chars = max_prompt_chars
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt

    @classmethod
    def from_options(
        cls,
        options: GatewayOptions,
        *,
        sanitizer: Sanitizer | None = None,
        new_session: Callable[[], PlaceholderSession] | None = None,
        **cloud_kwargs: Any,
    ) -> Gateway:
        state_dir = ensure_state_dir(options.state_dir)
        router = Router(options.route, max_residual_risk=options.max_residual_risk, min_confidence=options.min_confidence)
        if (sanitizer is None or new_session is None) and router.policy is not Policy.LOCAL:
            real_sanitizer, real_session = default_sanitizer(state_dir)
            sanitizer = sanitizer or real_sanitizer
            new_session = new_session or real_session
        cloud = None
        if router.policy is not Policy.LOCAL:
            log_file = state_dir / LOG_NAME
            has_entries = log_file.exists() and log_file.stat().st_size > 0
            log = OutgoingLog(log_file, DeviceKey.load_or_create(state_dir, must_exist=has_entries))
            cloud = CloudClient(
                options.cloud_url,
                options.cloud_model,
                timeout=options.timeout,
                max_retries=options.max_retries,
                log=log,
                **cloud_kwargs,
            )
        local = None
        if router.uses_local_first:
            local = LocalModel(options.local_model, max_new_tokens=options.local_max_new_tokens)
        return cls(
            sanitizer=sanitizer,
            new_session=new_session,
            router=router,
            cloud=cloud,
            local=local,
            max_prompt_chars=options.max_prompt_chars,
            max_tokens=options.max_tokens,
        )

    def ask(self, prompt: str, *, session: PlaceholderSession | None = None) -> AskResult:
        """Answer one prompt. Raises PromptError (bad prompt), CloudError (cloud failed after the
        sanitized request was logged and sent), LocalModelError (route=local and no local model)."""
        text = validate_prompt(prompt, self.max_prompt_chars)

        local_answer: LocalAnswer | None = None
        local_note = ""
        if self.router.uses_local_first:
            if self.local is None:
                if self.router.policy is Policy.LOCAL:
                    raise LocalModelError("route=local but no local model is configured")
                local_note = "no local model; "
            else:
                try:
                    local_answer = self.local.answer(text)
                except LocalModelError as err:
                    if self.router.policy is Policy.LOCAL:
                        raise
                    local_note = f"local model unavailable ({err}); "
            if local_answer is not None:
                decision = self.router.after_local(local_answer)
                if decision is not None:
                    if decision.route is Route.LOCAL and local_answer.too_long:
                        raise LocalModelError("the prompt is too long for the local model's context")
                    return AskResult(
                        route=decision.route.value,
                        answer=local_answer.text,
                        reason=decision.reason,
                        confidence=round(local_answer.confidence, 4),
                    )

        try:
            if self.sanitizer is None or (session is None and self.new_session is None):
                raise FedprivError("no sanitizer configured")
            session = session if session is not None else self.new_session()
            sanitized = self.sanitizer.sanitize(text, session)
        except Exception as err:  # noqa: BLE001 -- whatever went wrong, fail closed
            return self._refused(self.router.sanitize_failed(err, local=local_answer), local_note, local_answer)
        if not isinstance(sanitized, SanitizedPrompt) or not isinstance(sanitized.sanitized, str):
            return self._refused(
                self.router.sanitize_failed(TypeError("sanitizer returned no SanitizedPrompt"), local=local_answer),
                local_note,
                local_answer,
            )
        decision = self.router.after_sanitize(sanitized, local=local_answer)
        if not decision.sends:
            return self._refused(decision, local_note, local_answer, sanitized)
        if self.cloud is None:
            raise FedprivError("no cloud endpoint configured")

        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": sanitized.sanitized})
        conversation = getattr(session, "conversation_id", None)
        cloud_answer = self.cloud.chat(
            messages, max_tokens=self.max_tokens, conversation=conversation if isinstance(conversation, str) else None
        )
        restored = session.restore(cloud_answer.text)
        return AskResult(
            route=Route.CLOUD.value,
            answer=restored,
            reason=local_note + decision.reason,
            sent=sanitized.sanitized,
            confidence=round(local_answer.confidence, 4) if local_answer is not None else None,
            residual_risk=sanitized.residual_risk,
            entities=len(sanitized.entities),
            attempts=cloud_answer.attempts,
        )

    @staticmethod
    def _refused(
        decision: RouteDecision,
        local_note: str,
        local_answer: LocalAnswer | None,
        sanitized: SanitizedPrompt | None = None,
    ) -> AskResult:
        return AskResult(
            route=Route.REFUSED.value,
            answer=None,
            reason=local_note + decision.reason,
            confidence=round(local_answer.confidence, 4) if local_answer is not None else None,
            residual_risk=sanitized.residual_risk if sanitized is not None else None,
            entities=len(sanitized.entities) if sanitized is not None else None,
        )


def log_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir).expanduser() / LOG_NAME
