"""The laws where they bind (directional bias, MAPS, tails, trilemma, sharper testing errors): config, simulations, tables, figures, text, the report section."""
