"""The dashboard for the people who decide: aggregate figures per unit, with drill-down."""
