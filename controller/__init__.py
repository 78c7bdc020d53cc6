"""Controller: config model and validation, versioned config store, planner, gateway and query client."""
