"""`agritrace`: the operator command-line tool for the AgriTrace subject registry."""
