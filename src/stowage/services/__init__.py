"""Use cases of Stowage; adapters (api, web, cli, agent) call these."""
