"""Communities: CommDesk's communities as billing sees them. `directory` reads them from
CommDesk's MongoDB (never writes it) through a short cache; `mongo` makes the client; `deps`
hands the API's directory to routes. Spends, fee plans and earnings are to follow here."""
