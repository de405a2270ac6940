"""App configuration: connects the signal that feeds the SSE streams."""

from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    """The audio tasks domain."""

    name = "tasks_app"
    verbose_name = "Audio tasks"

    def ready(self) -> None:
        """Connect the Task post_save publisher."""
        from django.db.models.signals import post_save

        from . import signals
        from .models import Task

        post_save.connect(signals.task_saved, sender=Task, dispatch_uid="tasks_app.task_saved")
