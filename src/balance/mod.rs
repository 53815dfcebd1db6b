//! Load balancing over discovered instances.
