"""Console sign-in rules: throttling of failed logins and the TOTP second factor."""

import hashlib

from django.conf import settings
from django.core.cache import cache
from django_otp import devices_for_user, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from hie.audit.models import Action, Outcome
from hie.audit.services import Actor, record_event
from hie.console.models import SecondFactorRequirement


def _failure_key(username: str, address: str) -> str:
    # Hashed: the cache never holds user names.
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()[:32]
    return f"console-login-failures:{digest}"


def login_locked(username: str, address: str) -> bool:
    return cache.get(_failure_key(username, address), 0) >= settings.CONSOLE_LOGIN_FAILURE_LIMIT


def note_failed_login(username: str, address: str) -> None:
    key = _failure_key(username, address)
    # add() starts the window on the first failure; later failures count within it.
    cache.add(key, 0, timeout=settings.CONSOLE_LOGIN_FAILURE_WINDOW)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.CONSOLE_LOGIN_FAILURE_WINDOW)
    record_event(actor=Actor(source_address=address), action=Action.EXECUTE, event_type="staff-login",
                 outcome=Outcome.MINOR_FAILURE)  # fmt: skip


def note_login(user_id: int, username: str, address: str) -> None:
    cache.delete(_failure_key(username, address))
    record_event(actor=Actor(staff_user_id=user_id, source_address=address), action=Action.EXECUTE,
                 event_type="staff-login")  # fmt: skip


def second_factor_required(user: object) -> bool:
    """Must this user show a TOTP code before using the console?"""
    if settings.CONSOLE_REQUIRE_TOTP or user_has_device(user):
        return True
    return SecondFactorRequirement.objects.filter(user=user, required=True).exists()


def pending_device(user: object) -> TOTPDevice:
    """The user's TOTP device waiting for its first code (created on first use of the set-up page)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="console", confirmed=False)


def confirm_device(device: TOTPDevice, token: str) -> bool:
    if not device.verify_token(token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    record_event(actor=Actor(staff_user_id=device.user_id), action=Action.UPDATE, event_type="staff-totp-enrolled")
    return True


def verified_device(user: object, token: str) -> TOTPDevice | None:
    """The confirmed device that accepts `token` (devices throttle repeated failures themselves)."""
    for device in devices_for_user(user, confirmed=True):
        if device.verify_token(token):
            return device
    record_event(actor=Actor(staff_user_id=user.pk), action=Action.EXECUTE, event_type="staff-totp",
                 outcome=Outcome.MINOR_FAILURE)  # fmt: skip
    return None


def set_second_factor_requirement(*, user: object, required: bool, actor: Actor) -> None:
    decision = {"required": required, "set_by_id": actor.staff_user_id}
    SecondFactorRequirement.objects.update_or_create(user=user, defaults=decision)
    record_event(actor=actor, action=Action.UPDATE, event_type="staff-totp-requirement",
                 detail={"user": user.pk, "required": required})  # fmt: skip


def reset_second_factor(*, user: object, actor: Actor) -> None:
    """A lost phone: remove the user's devices so they enrol again at their next sign-in."""
    TOTPDevice.objects.filter(user=user).delete()
    record_event(actor=actor, action=Action.UPDATE, event_type="staff-totp-reset", detail={"user": user.pk})
