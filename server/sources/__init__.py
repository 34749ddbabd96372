"""Sources: they turn pods and host entries into model records and feed the registry; they know no DNS."""
