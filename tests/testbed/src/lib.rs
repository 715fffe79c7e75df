//! Test-only Kubernetes API server double (work in progress).
