from django.contrib.auth import views as auth_views
from django.urls import path

from hie.console.views import audit, auth, consents, dashboard, jobs, members, persons, review

app_name = "console"

urlpatterns = [
    path("", dashboard.dashboard, name="home"),
    path("login/", auth.ConsoleLoginView.as_view(), name="login"),
    path("second-factor/", auth.second_factor, name="second-factor"),
    path("second-factor/set-up/", auth.second_factor_setup, name="second-factor-setup"),
    path("staff/", auth.staff, name="staff"),
    path("staff/<int:pk>/second-factor/", auth.staff_second_factor, name="staff-second-factor"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("review/", review.review_queue, name="review-queue"),
    path("review/<int:pk>/", review.review_task, name="review-task"),
    path("review/<int:pk>/decide/", review.decide, name="review-decide"),
    path("persons/", persons.person_search, name="person-search"),
    path("persons/<str:euid>/", persons.person_detail, name="person"),
    path("persons/<str:euid>/records/<int:record_pk>/split/", persons.split_record, name="record-split"),
    path("persons/<str:euid>/consents/new/", consents.consent_new, name="consent-new"),
    path("changes/<int:pk>/undo/", persons.undo_change, name="change-undo"),
    path("consents/<int:pk>/withdraw/", consents.consent_withdraw, name="consent-withdraw"),
    path("consents/<int:pk>/scan/", consents.consent_scan, name="consent-scan"),
    path("break-glass/", consents.break_glass_queue, name="break-glass"),
    path("break-glass/<int:pk>/review/", consents.break_glass_review, name="break-glass-review"),
    path("members/", members.members, name="members"),
    path("members/<int:pk>/", members.member_detail, name="member"),
    path("members/<int:pk>/endpoint/", members.member_endpoint, name="member-endpoint"),
    path("clients/<int:pk>/rotate/", members.client_rotate, name="client-rotate"),
    path("clients/<int:pk>/revoke/", members.client_revoke, name="client-revoke"),
    path("audit/", audit.audit_log, name="audit"),
    path("jobs/inbox/", jobs.inbox, name="inbox"),
    path("jobs/inbox/replay/", jobs.inbox_replay, name="inbox-replay"),
    path("jobs/exchange/", jobs.exchange, name="exchange"),
    path("jobs/exchange/dead-letters/<int:pk>/replay/", jobs.dead_letter_replay, name="dead-letter-replay"),
    path("jobs/exchange/dead-letters/replay/", jobs.dead_letters_replay_all, name="dead-letters-replay"),
    path("jobs/exchange/dead-letters/progress/", jobs.dead_letters_progress, name="dead-letters-progress"),
    path("jobs/exchange/endpoints/<int:pk>/pause/", jobs.endpoint_pause, name="endpoint-pause"),
    path("jobs/training/", jobs.training, name="training"),
    path("jobs/training/start/", jobs.training_start, name="training-start"),
    path("jobs/training/<int:pk>/progress/", jobs.training_progress, name="training-progress"),
    path("jobs/rematch/start/", jobs.rematch_start, name="rematch-start"),
    path("jobs/rematch/<int:pk>/progress/", jobs.rematch_progress, name="rematch-progress"),
]
