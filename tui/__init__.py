"""The Textual admin console (`radiance console`); it talks to the server over HTTP only."""
