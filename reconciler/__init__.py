"""provctl: a declarative GitOps reconciler for IP-phone auto-provisioning."""

__version__ = "0.1.0"
