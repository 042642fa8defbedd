"""Topic names and which topic each event type is published on."""

from __future__ import annotations

DATASET_EVENTS = "privtune.dataset.events"
CURATION_EVENTS = "privtune.curation.events"
CURATION_REPORTS = "privtune.curation.reports"
TRAINING_EVENTS = "privtune.training.events"
TRAINING_COMMANDS = "privtune.training.commands"
TRAINING_REPORTS = "privtune.training.reports"
TRAINING_CONTROL = "privtune.training.control"
EVAL_EVENTS = "privtune.eval.events"
EVAL_COMMANDS = "privtune.eval.commands"
EVAL_REPORTS = "privtune.eval.reports"
DEPLOYMENT_EVENTS = "privtune.deployment.events"
MODEL_EVENTS = "privtune.model.events"
PRIVACY_EVENTS = "privtune.privacy.events"
ACCESS_EVENTS = "privtune.access.events"
AUDIT = "privtune.audit"
DEAD_LETTER = "privtune.deadletter"

ALL_TOPICS: tuple[str, ...] = (
    DATASET_EVENTS,
    CURATION_EVENTS,
    CURATION_REPORTS,
    TRAINING_EVENTS,
    TRAINING_COMMANDS,
    TRAINING_REPORTS,
    TRAINING_CONTROL,
    EVAL_EVENTS,
    EVAL_COMMANDS,
    EVAL_REPORTS,
    DEPLOYMENT_EVENTS,
    MODEL_EVENTS,
    PRIVACY_EVENTS,
    ACCESS_EVENTS,
    AUDIT,
    DEAD_LETTER,
)

# oneof payload field name -> topic of the *recorded* event (what the outbox publishes). Commands for
# workers go on their own topics: TrainingScheduled on privtune.training.commands (the worker pool's
# consumer group), TrainingAttemptStop on privtune.training.control (every running worker listens).
# Workers publish their reports (TrainingStarted ... TrainingFailed, not yet recorded) straight to
# privtune.training.reports; the orchestrator records the ones its aggregate accepts, and only those
# reach privtune.training.events. Curation workers do the same with their outcome (DatasetVersionCreated
# or CurationFailed) on privtune.curation.reports, recorded by the curation service.
_TOPIC_BY_PAYLOAD: dict[str, str] = {
    "dataset_registered": DATASET_EVENTS,
    "curation_requested": CURATION_EVENTS,
    "dataset_version_created": CURATION_EVENTS,
    "curation_failed": CURATION_EVENTS,
    "training_requested": TRAINING_EVENTS,
    "training_scheduled": TRAINING_COMMANDS,
    "training_stop_requested": TRAINING_EVENTS,
    "training_cancelled": TRAINING_EVENTS,
    "model_version_registered": MODEL_EVENTS,
    "model_alias_moved": MODEL_EVENTS,
    "privacy_budget_reserved": PRIVACY_EVENTS,
    "privacy_budget_settled": PRIVACY_EVENTS,
    "training_rejected": TRAINING_EVENTS,
    "training_queued": TRAINING_EVENTS,
    "training_started": TRAINING_EVENTS,
    "training_progress": TRAINING_EVENTS,
    "checkpoint_saved": TRAINING_EVENTS,
    "training_completed": TRAINING_EVENTS,
    "training_failed": TRAINING_EVENTS,
    "training_heartbeat": TRAINING_EVENTS,
    "training_preempted": TRAINING_EVENTS,
    "training_attempt_claimed": TRAINING_EVENTS,
    "training_attempt_stop": TRAINING_CONTROL,
    "eval_requested": EVAL_EVENTS,
    "eval_completed": EVAL_EVENTS,
    "eval_suite_created": EVAL_EVENTS,
    "eval_shard_scheduled": EVAL_COMMANDS,
    "eval_shard_completed": EVAL_EVENTS,
    "eval_shard_failed": EVAL_EVENTS,
    "eval_failed": EVAL_EVENTS,
    "deployment_requested": DEPLOYMENT_EVENTS,
    "deployment_approved": DEPLOYMENT_EVENTS,
    "pool_deployed": DEPLOYMENT_EVENTS,
    "traffic_flipped": DEPLOYMENT_EVENTS,
    "rolled_back": DEPLOYMENT_EVENTS,
    "pool_healthy": DEPLOYMENT_EVENTS,
    "shadow_started": DEPLOYMENT_EVENTS,
    "deployment_verified": DEPLOYMENT_EVENTS,
    "deployment_failed": DEPLOYMENT_EVENTS,
    "shadow_judged": DEPLOYMENT_EVENTS,
    "access_denied": ACCESS_EVENTS,
    "break_glass_used": ACCESS_EVENTS,
    "access_allowed": ACCESS_EVENTS,
}


def topic_for_payload(payload_field: str) -> str:
    """Return the topic an event with this oneof payload field is published on."""
    try:
        return _TOPIC_BY_PAYLOAD[payload_field]
    except KeyError:
        raise KeyError(f"no topic is routed for event payload {payload_field!r}; add it to services/common/topics.py") from None


def payload_fields() -> tuple[str, ...]:
    """Every routed payload field (the event catalogue)."""
    return tuple(_TOPIC_BY_PAYLOAD)
