"""The paper plugins. Each sub-package registers its modules on import."""
