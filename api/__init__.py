"""artifactlog API: GraphQL schema (strawberry on starlette), HTTP routes and the CLI."""
