"""JupyterHub integration: provisioning tenants and the workbench service."""
