"""The management API: keys, analytics, billing; admin-only unless a route says otherwise."""
