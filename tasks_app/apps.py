"""App configuration: connects the signals that feed the SSE streams."""

from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    """The audio tasks domain."""

    name = "tasks_app"
    verbose_name = "Audio tasks"

    def ready(self) -> None:
        """Register the built-in task kinds, plug the job into the queue, connect the publishers."""
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save, pre_save

        # The kinds' declarations only (their audio code loads when a task first runs), and the job
        # that `services` queues without importing it (see `queue`).
        from . import jobs, signals  # noqa: F401
        from .audio import processors  # noqa: F401
        from .models import Task

        user = get_user_model()
        post_save.connect(signals.task_saved, sender=Task, dispatch_uid="tasks_app.task_saved")
        post_delete.connect(signals.task_deleted, sender=Task, dispatch_uid="tasks_app.task_deleted")
        pre_save.connect(signals.user_saving, sender=user, dispatch_uid="tasks_app.user_saving")
        post_save.connect(signals.user_saved, sender=user, dispatch_uid="tasks_app.user_saved")
        post_delete.connect(signals.user_deleted, sender=user, dispatch_uid="tasks_app.user_deleted")
