"""gettext catalogs (zh_CN, en) as package data."""
