"""The campus registry: CSV import and export of units, places and persons."""
