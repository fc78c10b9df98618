"""The GraphQL documents the client sends: one named operation each, field names exactly as
in api/schema.graphql."""

from __future__ import annotations

VERSION_FRAGMENT = """
fragment VersionFields on ArtifactVersion {
  namespace name number label stage digest size mediaType metadata producer createdAt position
}
"""

# GraphQL refuses a document with an unused fragment, so only documents that spread it get it.
INGEST = """
mutation Ingest($input: IngestInput!) {
  ingest(input: $input) { created position version { ...VersionFields } }
}
""" + VERSION_FRAGMENT

PROMOTE = """
mutation Promote($ref: VersionRefInput!, $reason: String) {
  promote(ref: $ref, reason: $reason) {
    position version { ...VersionFields } previous { ...VersionFields }
  }
}
""" + VERSION_FRAGMENT

WITHDRAW = """
mutation Withdraw($ref: VersionRefInput!, $reason: String) {
  withdraw(ref: $ref, reason: $reason) { position version { ...VersionFields } }
}
""" + VERSION_FRAGMENT

ARTIFACT = """
query Artifact($namespace: String!, $name: String!, $minPosition: Int) {
  artifact(namespace: $namespace, name: $name, minPosition: $minPosition) {
    namespace name kind
    latest { ...VersionFields }
    production { ...VersionFields }
    versions(first: 0) { totalCount }
  }
}
""" + VERSION_FRAGMENT

HISTORY = """
query History($namespace: String!, $name: String!, $stage: Stage, $first: Int, $after: String,
              $minPosition: Int) {
  artifact(namespace: $namespace, name: $name, minPosition: $minPosition) {
    versions(stage: $stage, first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { node { ...VersionFields } }
    }
  }
}
""" + VERSION_FRAGMENT

DIFF = """
query Diff($from: VersionRefInput!, $to: VersionRefInput!, $key: [String!], $first: Int,
           $after: String) {
  diff(from: $from, to: $to, key: $key) {
    identical summary
    from { ...VersionFields }
    to { ...VersionFields }
    changes(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { node { section op path before after } }
    }
  }
}
""" + VERSION_FRAGMENT

LINEAGE = """
query Lineage($ref: VersionRefInput!, $direction: LineageDirection!, $depth: Int) {
  lineage(ref: $ref, direction: $direction, depth: $depth) {
    root { ...VersionFields }
    nodes { ...VersionFields }
    edges { from { namespace name number } to { namespace name number } }
  }
}
""" + VERSION_FRAGMENT

STATUS = """
query Status {
  status { headPosition state projections { name position lag lagSeconds parked state
    alertReason lagAlertEvents lagAlertSeconds } }
}
"""
