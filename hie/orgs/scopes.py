"""The scopes a client may ask for are the ones granted to it, not every scope the node knows."""

from oauth2_provider.scopes import SettingsScopes


class ApiClientScopes(SettingsScopes):
    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        if application is None:
            return []
        return application.scope_list

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        # A token request without a scope parameter gets everything the client was granted.
        return self.get_available_scopes(application, request)
