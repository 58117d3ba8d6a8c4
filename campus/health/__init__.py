"""Daily health reports and the rules engine: statuses, reasons, recovery and warnings."""
