"""The WordPress fixture of the clone tests: two real sites on loopback (`sites`) and reading them back (`check`)."""
