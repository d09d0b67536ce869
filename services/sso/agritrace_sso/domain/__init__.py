"""The sso domain: accounts and who may manage whom, sessions with refresh-token families,
the provincial platform directory. No framework imports."""
