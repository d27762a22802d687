"""What every other part of the service stands on: settings, the database and its tables and
migrations, the clock, and the error tree (`errors`)."""
