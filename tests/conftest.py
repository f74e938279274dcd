pytest_plugins = [
    "tests.fixtures.organizations",
    "tests.fixtures.integrations",
    "tests.fixtures.tokens",
    "tests.fixtures.commerce",
]
