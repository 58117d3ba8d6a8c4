"""Meal ordering (issue 9): menus, who may order, orders without overselling, and the counts."""
