"""moto_server, plus the one Lambda setting the module needs that moto lacks.

moto 5.2 ignores a function's LoggingConfig: CreateFunction and
UpdateFunctionConfiguration drop it and GetFunction never returns it, so every
plan after apply would want to add the module's logging_config again. This
wrapper stores the setting and returns it the way Lambda does (JSON format
defaults both log levels to INFO; omitted, the format is Text), then runs the
normal moto_server. Where moto itself returns LoggingConfig, moto wins.

Usage: python3 infra/test/moto_server.py -H 127.0.0.1 -p PORT
"""

import sys

from moto import server
from moto.awslambda import models


def _logging_config(function_name, requested, current=None):
    config = dict(current or {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{function_name}"})
    config.update(requested or {})
    if config.get("LogFormat") == "JSON":
        config.setdefault("ApplicationLogLevel", "INFO")
        config.setdefault("SystemLogLevel", "INFO")
    else:
        # Lambda rejects levels with Text format; drop them as it would never store them.
        config.pop("ApplicationLogLevel", None)
        config.pop("SystemLogLevel", None)
    return config


def _patch(cls):
    original_init = cls.__init__
    original_get = cls.get_configuration
    original_update = cls.update_configuration

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        spec = kwargs["spec"] if "spec" in kwargs else args[1]
        self._pullthrough_logging = _logging_config(self.function_name, spec.get("LoggingConfig"))

    def get_configuration(self, *args, **kwargs):
        config = original_get(self, *args, **kwargs)
        logging = getattr(self, "_pullthrough_logging", None)
        if logging is not None:
            config.setdefault("LoggingConfig", logging)
        return config

    def update_configuration(self, config_updates):
        if "LoggingConfig" in config_updates:
            self._pullthrough_logging = _logging_config(
                self.function_name,
                config_updates["LoggingConfig"],
                getattr(self, "_pullthrough_logging", None),
            )
        return original_update(self, config_updates)

    cls.__init__ = __init__
    cls.get_configuration = get_configuration
    cls.update_configuration = update_configuration


_patch(models.LambdaFunction)

if __name__ == "__main__":
    server.main(sys.argv[1:])
