"""AgriTrace single sign-on: accounts, sessions, signed access tokens, token exchange for
provincial platforms and the directory of provincial platforms."""
