"""What the console keeps of its own: which staff must sign in with a second factor."""

from django.conf import settings
from django.db import models


class SecondFactorRequirement(models.Model):
    """An administrator's decision that one staff member signs in with a TOTP code."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="second_factor")
    required = models.BooleanField(default=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"second factor {'required' if self.required else 'optional'} for user {self.user_id}"
