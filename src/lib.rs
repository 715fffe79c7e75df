//! storekeeper: provisions isolated ecommerce stores on Kubernetes from files in Git.
//!
//! Data flows one way: [`source`] reads store files into a snapshot of [`spec::StoreSpec`]s;
//! the cluster's observed state is read next; a pure plan decides one action per store; the
//! reconciler carries it out through the real `helm` CLI. See the README's architecture section.

pub mod alloc;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod diagnostic;
pub mod events;
pub mod execute;
pub mod helm;
pub mod iso;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod page;
pub mod plan;
pub mod reconcile;
pub mod record;
pub mod render;
pub mod runner;
pub mod sdnotify;
pub mod server;
pub mod source;
pub mod spec;
pub mod status;
pub mod validate;
pub mod values;
