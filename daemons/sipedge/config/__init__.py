"""The sipedge config file: load, validate, and hand out one immutable `Config` snapshot.

This package owns the config schema, the SS_* parameter table, loading and validation. It
imports nothing else from sipedge; everything else imports config's public names from
`sipedge.config` (this module), never from the modules inside it:

* `errors`: `ConfigProblem`, `ConfigError` (and the internal `_Bad`, `Described`/`MISSING`).
* `schema`: the frozen dataclasses, `Config` down to `ListenAddress`, with their defaults.
* `values`: the value parsers and the "allowed" texts of their problems.
* `parameters`: the SS_* parameter table (`PARAMETER_NAMES`, `parameter_field`, ...).
* `collector`: `_Collector`, which walks the document section by section.
* `api`: the `api:` section (listen, tokens and their scopes, Host names, TLS, open metrics).
* `security`: the `security:` section (trusted networks, rate limit, scanners, digest).
* `media`: the `media:` section (mediad socket, relay addresses, refused SDP networks, caps).
* `loader`: `parse_config`, `load_config` (YAML, duplicate keys), `check_config_main`.

The file is YAML (see `daemons/conf/sipedge.example.yaml`); parameter names, defaults and
ranges are the contract in `parameters.md`. Validation collects *every* problem before it
raises, so an operator fixes a file in one pass: each `ConfigProblem` names the field (dotted
path, `[i]` for list entries), the value found and what is allowed there.

Value rules, in short:

* On/Off: YAML booleans (true/false/yes/no/on/off) or the words On/Off in any case.
* Per-gateway overrides: the word Default (or null) means "use the global parameter" (None).
* Numbers: ints, floats where the range allows fractions, or strings holding a number (Ansible
  sometimes renders numbers quoted). Booleans are never numbers.
* Words (Ignore/Id/None, Auto, ...): any case; stored in the spelling of `parameters.md`.
* Unknown keys are errors, anywhere; duplicated keys in one YAML mapping are errors too (YAML
  would otherwise silently keep the last one).
"""

from __future__ import annotations

from sipedge.config.errors import ConfigError, ConfigProblem
from sipedge.config.loader import check_config_main, load_config, parse_config
from sipedge.config.parameters import PARAMETER_NAMES, SIPEDGE_PARAMETERS, parameter_field
from sipedge.config.schema import (
    ApiConfig,
    Config,
    DialPlanRule,
    Endpoint,
    FleetConfig,
    ListenAddress,
    MappingGateway,
    MediaConfig,
    Parameters,
    RateLimit,
    Registration,
    Route,
    RoutingGateway,
    SecurityConfig,
    SipConfig,
    StorageConfig,
)

__all__ = [
    "PARAMETER_NAMES",
    "SIPEDGE_PARAMETERS",
    "ApiConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DialPlanRule",
    "Endpoint",
    "FleetConfig",
    "ListenAddress",
    "MappingGateway",
    "MediaConfig",
    "Parameters",
    "RateLimit",
    "Registration",
    "Route",
    "RoutingGateway",
    "SecurityConfig",
    "SipConfig",
    "StorageConfig",
    "check_config_main",
    "load_config",
    "parameter_field",
    "parse_config",
]
