"""CertAuto's ``reflector`` destination: copies of a binding's certificate in other namespaces.

The plugin module the entry point names is :mod:`certauto_reflector.plugin`; the
config model is :class:`certauto_reflector.config.ReflectorConfig` and the
destination :class:`certauto_reflector.destination.ReflectorDestination`.
"""

__version__ = "0.1.0"
