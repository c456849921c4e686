"""Register a ZenML stack from a recipe in infra/stacks/ (existing components of the same name are updated to it).

    python infra/register_stack.py infra/stacks/kubernetes.yaml [--check]

${VARS} in the recipe are taken from the environment (a missing one is an error that names it). A recipe's
`secrets:` section ({name: {key: value}}) is stored as ZenML secrets (created, or updated to the given values)
before the components are registered, so the components hold only {{name.key}} references.
--check only validates every component's configuration against its ZenML flavor, without registering.
Run it with the project's state folder like `covid-xray` does: COVID_XRAY_HOME (default .covid-xray).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)\}")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the component."""


SECRET_REFERENCE = re.compile(r"^\{\{[^}]+\}\}$")


def load_recipe(path: str | Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The recipe with ${NAME} in its values substituted from `environ` (default os.environ)."""
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault("COVID_XRAY_HOME", str(ROOT / ".covid-xray"))
    recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(recipe, dict) or "stack" not in recipe or "components" not in recipe:
        raise RecipeError(f"{path}: expected keys 'stack' and 'components'")
    missing: set[str] = set()

    def substitute(value):
        if isinstance(value, dict):
            return {key: substitute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [substitute(item) for item in value]
        if isinstance(value, str):
            missing.update(name for name in VARIABLE.findall(value) if name not in environ)
            return VARIABLE.sub(lambda m: environ.get(m.group(1), ""), value)
        return value

    recipe = substitute(recipe)
    if missing:
        raise RecipeError(f"{path}: set {', '.join(sorted(missing))} in the environment")
    return recipe


def flavors() -> dict[tuple[str, str], Any]:
    """Every ZenML flavor (built-in and integrations), instantiated once, by (component type, flavor name)."""
    from zenml.stack.flavor_registry import FlavorRegistry

    registry = FlavorRegistry()
    return {
        (flavor.type.value, flavor.name): flavor
        for flavor in (f() for f in registry.builtin_flavors + registry.integration_flavors)
    }


def validate(recipe: dict[str, Any], origin: str = "<recipe>") -> list[str]:
    """Validate each component's configuration with its flavor's config class; returns 'type/name' of each."""
    known = flavors()
    checked = []
    for component_type, component in recipe["components"].items():
        key = (component_type, component["flavor"])
        if key not in known:
            raise RecipeError(
                f"{origin}: {component_type} {component['name']!r}: unknown flavor {component['flavor']!r}"
            )
        # {{secret.key}} references resolve only against a registered ZenML secret, at run time: check the rest.
        configuration = {
            name: "secret-reference" if isinstance(value, str) and SECRET_REFERENCE.match(value) else value
            for name, value in component.get("configuration", {}).items()
        }
        try:
            known[key].config_class(**configuration)
        except Exception as error:  # pydantic ValidationError or a flavor's own ValueError
            raise RecipeError(f"{origin}: {component_type} {component['name']!r}: {error}") from None
        checked.append(f"{component_type}/{component['name']}")
    return checked


def store_secrets(client, recipe: dict[str, Any], origin: str = "<recipe>") -> list[str]:
    """Create or update the recipe's ZenML secrets; returns their names. Empty values are an error."""
    names = []
    for name, values in (recipe.get("secrets") or {}).items():
        empty = sorted(key for key, value in values.items() if not str(value))
        if empty:
            raise RecipeError(f"{origin}: secret {name!r}: empty value for {', '.join(empty)}")
        values = {key: str(value) for key, value in values.items()}
        try:
            client.update_secret(client.get_secret(name).id, add_or_update_values=values)
        except KeyError:
            client.create_secret(name, values)
        names.append(name)
    return names


def register(recipe: dict[str, Any], origin: str = "<recipe>") -> str:
    """Create the recipe's secrets and components (reusing components of the same name) and its stack in the
    project's ZenML store."""
    from covid_xray.ops.stack import prepare_environment, zenml_client

    prepare_environment()
    client = zenml_client()
    store_secrets(client, recipe, origin)
    components = {}
    for component_type, component in recipe["components"].items():
        existing = {c.name: c for c in client.list_stack_components(type=component_type, size=100).items}
        configuration = component.get("configuration", {})
        try:
            if component["name"] not in existing:
                client.create_stack_component(
                    component["name"], component["flavor"], component_type, configuration=configuration
                )
            elif any(existing[component["name"]].configuration.get(k) != v for k, v in configuration.items()):
                # The recipe is the source of truth: e.g. a new endpoint after the compose stack moved ports.
                client.update_stack_component(component["name"], component_type, configuration=configuration)
        except (KeyError, ValueError) as error:  # e.g. a {{secret.key}} whose secret does not exist yet
            raise RecipeError(f"{origin}: {component_type} {component['name']!r}: {error}") from None
        components[component_type] = component["name"]
    if recipe["stack"] not in {s.name for s in client.list_stacks(size=100).items}:
        client.create_stack(recipe["stack"], components=components)
    return recipe["stack"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--check", action="store_true", help="validate only, register nothing")
    args = parser.parse_args()
    try:
        recipe = load_recipe(args.recipe)
        checked = validate(recipe, args.recipe)
        print(f"{args.recipe}: valid ({', '.join(checked)})")
        if not args.check:
            stack = register(recipe, args.recipe)
            print(f"stack {stack} registered; run on it with `execution.stack: {stack}` in the config")
    except RecipeError as error:
        sys.exit(f"register_stack: error: {error}")


if __name__ == "__main__":
    main()
