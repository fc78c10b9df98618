"""GraphQL execution with a short path for plain fields.

graphql-core executes every field of every object through the same machinery: a path, a
resolve info, strawberry's resolver wrapper, argument coercion, the awaitable check. For a
page of 1,000 versions that machinery was most of the request (profiled), though nearly
every field is a plain attribute. Here, fields that strawberry itself treats as "basic" (no
resolver, no extensions) and that take no arguments are read with the very call strawberry
makes (``StrawberryField.get_result``):

- of scalar or enum type, the value is serialized directly by the type's ``serialize``;
  a value that would be an error (null for a non-null field, one the scalar refuses) goes
  the usual way instead, so clients get graphql-core's own errors;
- of object or list type, the value is completed by graphql-core (``complete_value``, with
  execute_field's error handling), without the resolver call around it.

A field with a resolver may name, in its metadata under ``PRELOADED``, an attribute that a
page fills beforehand: when that attribute is not None it is the field's value, read the
same way; otherwise the resolver runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

PRELOADED = "artifactlog.preloaded"


class Plain:
    """How to read one plain field of a selection."""

    __slots__ = ("attribute", "field", "field_def", "nullable", "serialize")

    def __init__(self, field: StrawberryField, field_def: GraphQLField,
                 serialize: Callable[[Any], Any] | None, nullable: bool,
                 attribute: str | None) -> None:
        self.field = field
        self.field_def = field_def
        self.serialize = serialize  # None: an object or list, completed by graphql-core
        self.nullable = nullable
        self.attribute = attribute  # set: a resolver field with a preloaded attribute

    def read(self, source: Any) -> Any:
        if self.attribute is not None:
            return getattr(source, self.attribute)
        return self.field.get_result(source, None, [], {})


Plan = list[tuple[str, FieldDetailsList, Plain | None]]


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, reading plain fields without a resolver call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per request: by parent type and the grouped field set, which graphql-core memoizes
        # per selection, so every item of a list shares one plan. The set is kept with its
        # plan so its id cannot be reused while the request runs.
        self._plans: dict[tuple[str, int], tuple[object, Plan | None]] = {}

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any,
                       path: Path | None, grouped_field_set: Any,
                       position_context: Any) -> Any:
        plan = self._plan(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set,
                                          position_context)
        # graphql-core's loop (Executor.execute_fields), with plain fields read directly.
        results: dict[str, Any] = {}
        awaitable: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for response_name, details, plain in plan:
                value = Undefined
                if plain is not None:
                    value = self._plain_value(plain, parent_type, source_value, details,
                                              path, response_name, position_context)
                if value is Undefined:  # not plain, or an error to report the usual way
                    value = self.execute_field(
                        parent_type, source_value, details,
                        Path(path, response_name, parent_type.name), position_context)
                    if value is Undefined:
                        continue
                if is_awaitable(value):
                    awaitable.append(response_name)
                results[response_name] = value
        except Exception:
            if awaitable:  # settle what other fields started: they may fail too
                self.settle_in_background([results[name] for name in awaitable])
            raise
        return _gather(results, awaitable) if awaitable else results

    def _plain_value(self, plain: Plain, parent_type: GraphQLObjectType, source: Any,
                     details: FieldDetailsList, path: Path | None, response_name: str,
                     position_context: Any) -> Any:
        """The field's completed value; Undefined where execute_field must answer."""
        try:
            value = plain.read(source)
        except Exception:  # execute_field reports it at the field's path
            return Undefined
        if value is None:
            return None if plain.nullable and plain.attribute is None else Undefined
        if plain.serialize is not None:
            try:
                serialized = plain.serialize(value)
            except Exception:  # as above
                return Undefined
            return Undefined if serialized is None or serialized is Undefined else serialized
        return self._complete(plain.field_def, parent_type, details,
                              Path(path, response_name, parent_type.name), value,
                              position_context)

    def _complete(self, field_def: GraphQLField, parent_type: GraphQLObjectType,
                  details: FieldDetailsList, path: Path, value: Any,
                  position_context: Any) -> Any:
        """Executor.execute_field after the resolver: complete_value, errors handled alike."""
        return_type = field_def.type
        info = self.build_resolve_info(field_def, [d.node for d in details], parent_type, path)
        try:
            completed = self.complete_value(return_type, details, info, path, value,
                                            position_context)
        except Exception as raw_error:  # graphql-core's handling, as there
            self.handle_field_error(raw_error, return_type, details, path)
            return None
        if self.is_awaitable(completed):
            return self._await_completed(completed, return_type, details, path)
        return completed

    async def _await_completed(self, completed: Awaitable[Any], return_type: GraphQLOutputType,
                               details: FieldDetailsList, path: Path) -> Any:
        try:
            return await completed
        except Exception as raw_error:  # as in Executor.execute_field
            self.handle_field_error(raw_error, return_type, details, path)
            return None

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> Plan | None:
        key = (parent_type.name, id(grouped_field_set))
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = (grouped_field_set, self._make_plan(parent_type,
                                                                           grouped_field_set))
        return found[1]

    def _make_plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any
                   ) -> Plan | None:
        if self.middleware_manager is not None and self.middleware_manager.middlewares:
            return None  # extensions that wrap every resolver: each field their way
        strawberry_schema = getattr(self.schema, "_strawberry_schema", None)
        if strawberry_schema is None or strawberry_schema.exception_handlers:
            return None  # exception handlers change how a field's errors are answered
        plan: Plan = [(name, details, self._plain(parent_type, details))
                      for name, details in grouped_field_set.items()]
        return plan if any(plain is not None for _, _, plain in plan) else None

    def _plain(self, parent_type: GraphQLObjectType, details: FieldDetailsList
               ) -> Plain | None:
        """How to read the field directly (see the module docstring), or None."""
        if len(details) != 1 or details[0].defer_usage is not None:
            return None
        node = details[0].node
        if node.arguments or node.directives:
            return None
        field_def = self.schema.get_field(parent_type, node.name.value)
        if field_def is None or field_def.args:
            return None
        field = field_def.extensions.get("strawberry-definition")
        if not isinstance(field, StrawberryField):
            return None
        attribute = (field.metadata or {}).get(PRELOADED)
        if field.extensions or (field.base_resolver is not None and attribute is None):
            return None  # extensions (permissions...) and resolvers run their way
        field_type, nullable = field_def.type, True
        if isinstance(field_type, GraphQLNonNull):
            field_type, nullable = field_type.of_type, False
        leaf = isinstance(field_type, GraphQLScalarType | GraphQLEnumType)
        serialize = field_type.serialize if leaf and attribute is None else None
        return Plain(field, field_def, serialize, nullable, attribute)


async def _gather(results: dict[str, Any], awaitable: list[str]) -> dict[str, Any]:
    """The results with their awaitable fields awaited (as graphql-core does it)."""
    if len(awaitable) == 1:
        results[awaitable[0]] = await results[awaitable[0]]
    else:
        values = await gather_with_cancel(*(results[name] for name in awaitable))
        results.update(zip(awaitable, values, strict=True))
    return results
