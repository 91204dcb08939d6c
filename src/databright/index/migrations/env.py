"""Alembic environment: runs on the connection handed in by ``databright.index.db``."""

from alembic import context

import databright.index.cache
import databright.index.compute  # registers the compute market's tables
import databright.index.credits  # registers the ModelRegistry's credits
import databright.index.web  # registers the web app's tables
import databright.index.withdrawals  # noqa: F401 - registers the dividends withdrawn by source
from databright.index.models import Base

connection = context.config.attributes.get("connection")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
